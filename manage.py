#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # manage.py is the developer's entry point in a checkout: development mode (keys in
    # var/) unless told otherwise. Production runs the `patron` command with PATRON_DEBUG=0.
    os.environ.setdefault("PATRON_DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
