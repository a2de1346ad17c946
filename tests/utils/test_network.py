import os
import socket
from unittest import mock

from keras_transfer.utils.network import OfflineError
from keras_transfer.utils.network import is_online
from tests.test_case import TestCase


class NetworkTest(TestCase):
    def test_env_forces_offline(self):
        with mock.patch.dict(os.environ, {"KERAS_TRANSFER_OFFLINE": "1"}):
            with mock.patch.object(socket, "create_connection") as connect:
                self.assertFalse(is_online())
                connect.assert_not_called()

    def test_connection_result(self):
        with mock.patch.dict(os.environ, {"KERAS_TRANSFER_OFFLINE": "0"}):
            with mock.patch.object(socket, "create_connection", side_effect=OSError("unreachable")):
                self.assertFalse(is_online(timeout=0.1))
            with mock.patch.object(socket, "create_connection") as connect:
                self.assertTrue(is_online("example.org", 80, timeout=0.1))
                connect.assert_called_once_with(("example.org", 80), timeout=0.1)

    def test_offline_error_is_os_error(self):
        self.assertTrue(issubclass(OfflineError, OSError))
