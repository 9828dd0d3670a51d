from musicrep.cli import main

raise SystemExit(main())
