from aiguilleur.cli import main

# Guarded: a process the index spawns to parse files imports this module too.
if __name__ == "__main__":
    raise SystemExit(main())
