"""Test support shared by several test folders (stand-ins for what cannot run on this machine)."""
