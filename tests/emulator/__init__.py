"""Business Central + Entra ID emulator for tests, benchmarks and the demo (see README.md)."""
