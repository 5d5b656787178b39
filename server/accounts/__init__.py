"""Users and their credentials: authentication, login throttling, password hashing, modify policy."""
