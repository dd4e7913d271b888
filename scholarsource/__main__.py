"""`python -m scholarsource`: how tests and systemd run it."""

from scholarsource.cli import main

main()
