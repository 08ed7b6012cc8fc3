"""The simulators are tested against the channels' own test servers and clients."""

from tests.ivr.conftest import agi_server  # noqa: F401 - fixture
from tests.sms.conftest import inbox, make_esme, no_logged_errors, sim  # noqa: F401 - fixtures
