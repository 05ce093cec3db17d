"""``python -m meingym_tasks`` is the ``meingym-tasks`` command."""

from meingym_tasks.cli import main

if __name__ == "__main__":
    main()
