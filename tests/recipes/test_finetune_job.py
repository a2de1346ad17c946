from keras_transfer.recipes.finetune_job import finetune_folder
from keras_transfer.recipes.finetune_job import parse_blocks
from tests.test_case import TestCase


class FinetuneJobTest(TestCase):
    def test_parse_blocks(self):
        self.assertEqual(parse_blocks(None), "all")
        for choice in ("all", "first", "middle", "last"):
            self.assertEqual(parse_blocks(f" {choice} "), choice)
        self.assertEqual(parse_blocks("block1, block3,"), ["block1", "block3"])

    def test_argument_errors_before_reading_data(self):
        folder = self.get_temp_dir()  # empty: the argument checks come first
        self.assertRaisesValueError(["`backbone`", "resnet5"], finetune_folder, folder, backbone="resnet5")
        self.assertRaisesValueError(["`epochs`", "epochs=-1"], finetune_folder, folder, epochs=-1)
        self.assertRaisesValueError(["`batch_size`", "batch_size=0"], finetune_folder, folder, batch_size=0)
        self.assertRaisesValueError(["`validation_split`", "validation_split=1"], finetune_folder, folder,
                                    validation_split=1)
        self.assertRaisesValueError(["`data`", "no images"], finetune_folder, folder, backbone="simple_cnn")
