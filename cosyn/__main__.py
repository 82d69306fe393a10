from cosyn.cli import main

raise SystemExit(main())
