"""What several tests share and pytest does not inject: paths, the command line run as a user runs it, a quiet
Trainer, and the servers, browser, photos and event-file readers some tests need. Fixtures stay in tests/conftest.py."""
