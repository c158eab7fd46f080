from lifelens.cli import main

raise SystemExit(main())
