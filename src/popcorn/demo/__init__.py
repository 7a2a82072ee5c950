"""`popcorn demo`: a generated world and one incident played end to end on real processes."""
