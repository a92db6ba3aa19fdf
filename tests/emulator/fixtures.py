"""Placeholder until the emulator lands: the emulator helper replaces this file."""
