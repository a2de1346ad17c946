import os
from unittest import mock

import tensorflow_datasets as tfds

from keras_transfer.datasets import load_tfds
from keras_transfer.datasets import tfds_loader
from keras_transfer.utils.network import OfflineError
from tests.test_case import TestCase


class LoadTfdsTest(TestCase):
    def test_offline_error_is_fast_and_clear(self):
        missing = os.path.join(self.get_temp_dir(), "tfds")
        with mock.patch.dict(os.environ, {"KERAS_TRANSFER_OFFLINE": "1"}):
            with self.assertRaises(OfflineError) as ctx:
                load_tfds("mnist", data_dir=missing)
        message = str(ctx.exception)
        self.assertIn("'mnist'", message)
        self.assertIn(missing, message)
        self.assertIn("no internet", message)
        self.assertIn("load_image_folder", message)

    def test_download_false_when_not_prepared(self):
        missing = os.path.join(self.get_temp_dir(), "tfds")
        with self.assertRaises(OfflineError) as ctx:
            load_tfds("mnist", data_dir=missing, download=False)
        self.assertIn("download=False", str(ctx.exception))

    def test_online_path_with_mock_data(self):
        # tfds.testing.mock_data replaces the download and the records with fake examples.
        missing = os.path.join(self.get_temp_dir(), "tfds")
        with tfds.testing.mock_data(num_examples=3):
            with mock.patch.object(tfds_loader, "is_online", return_value=True):
                ds = load_tfds("mnist", split="train", data_dir=missing)
                examples = list(ds.as_numpy_iterator())
        self.assertEqual(len(examples), 3)
        image, label = examples[0]
        self.assertEqual(image.shape, (28, 28, 1))
        self.assertTrue(0 <= int(label) < 10)

    def test_unknown_name(self):
        message = self.assertRaisesValueError(["`name`", "Received: name='mnistt'", "'mnist'"], load_tfds, "mnistt")
        self.assertLess(len(message), 1000)
