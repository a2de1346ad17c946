"""Embedded datasets (digits, digits-M), splits, image folders and tfds, as arrays and tf.data."""

from keras_transfer.datasets.curriculum_dataset import curriculum_dataset
from keras_transfer.datasets.curriculum_order import CurriculumOrder
from keras_transfer.datasets.curriculum_order import difficulty_order
from keras_transfer.datasets.digit_captions import HELDOUT_TEMPLATES
from keras_transfer.datasets.digit_captions import TRAIN_TEMPLATES
from keras_transfer.datasets.digit_captions import digit_class_names
from keras_transfer.datasets.digit_captions import load_digit_captions
from keras_transfer.datasets.digits import load_digits
from keras_transfer.datasets.digits_m import load_digits_m
from keras_transfer.datasets.domain_pairs import domain_pairs
from keras_transfer.datasets.episodes import episode_dataset
from keras_transfer.datasets.episodes import sample_episodes
from keras_transfer.datasets.image_folder import load_image_folder
from keras_transfer.datasets.moons import MoonsDomains
from keras_transfer.datasets.moons import load_moons
from keras_transfer.datasets.multi_task_dataset import multi_task_dataset
from keras_transfer.datasets.multi_task_dataset import sampling_ratios
from keras_transfer.datasets.pipeline import make_dataset
from keras_transfer.datasets.sentence_pairs import sentence_pairs
from keras_transfer.datasets.sinusoid import sinusoid_task_dataset
from keras_transfer.datasets.sinusoid import sinusoid_tasks
from keras_transfer.datasets.tfds_loader import load_tfds
from keras_transfer.datasets.transfer_split import TransferSplit
from keras_transfer.datasets.transfer_split import digits_source_target
from keras_transfer.datasets.transfer_split import split_source_target
