"""Local real servers (Prosody, Redis) for the demo and the test suite.

Everything binds to 127.0.0.1 on ports chosen by the caller and lives in a temporary directory.
"""
