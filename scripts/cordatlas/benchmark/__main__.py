from cordatlas.benchmark.cli import main

raise SystemExit(main())
