from deviceauth._cli import main

raise SystemExit(main())
