"""Local stand-ins for the cloud services the monitor talks to. Never deployed."""
