from policygen.cli import main
import sys
sys.exit(main())
