from aiguilleur.cli import main

raise SystemExit(main())
