"""The API emulator's fixtures, for the tests of the emulator itself."""

from tests.support.kube_api import kube_api, kube_clients  # noqa: F401
