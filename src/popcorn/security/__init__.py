"""Cloud security: Security Monkey-style watch and audit, Repokid-style least privilege."""
