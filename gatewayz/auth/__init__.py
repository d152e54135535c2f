"""Accounts: roles and their permissions, passwords, login sessions, registration and login limits."""
