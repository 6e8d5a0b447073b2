"""The click commands: parse options, call the Session API, print."""
