from popcorn.cli import main

main()
