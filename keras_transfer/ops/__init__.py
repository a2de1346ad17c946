"""keras_transfer.ops: composable functions behind the models.

The MAML maths for users who write their own inner loop, and the transferability
scores (LogME, LEEP, NCE, H-score) that rank source models for a target dataset
without fine-tuning, BERT's token masking for cloze pre-training, and the permutation
sets of the jigsaw pretext task (`max_hamming_permutations`), and gradient caching
for contrastive batches larger than memory allows (`gradient_cache`), and the
mean prediction entropy TENT minimises at test time (`prediction_entropy`), and the
merging of task vectors (`linear_merge`, `task_arithmetic`, `ties_merge`), and the
token-sequence edits of visual prompt tuning (`insert_prompts`, `replace_prompts`, `remove_prompts`). The vectorisation
internals `MetaModel` uses
(`dense_chain_plan`, `vectorized_forward`, ...) stay in `keras_transfer.ops.maml`
and `keras_transfer.ops.maml_tasks`.
"""

from keras_transfer.ops.entropy import prediction_entropy
from keras_transfer.ops.fisher import diagonal_fisher
from keras_transfer.ops.gradient_cache import gradient_cache
from keras_transfer.ops.logme import log_me
from keras_transfer.ops.maml import exact_moments
from keras_transfer.ops.maml import maml_inner_loop
from keras_transfer.ops.maml import maml_inner_update
from keras_transfer.ops.maml import patch_batch_normalization
from keras_transfer.ops.maml_tasks import adapted_weight_indices
from keras_transfer.ops.maml_tasks import batch_norm_statistics
from keras_transfer.ops.maml_tasks import inner_rates_at_step
from keras_transfer.ops.maml_tasks import stateless_forward
from keras_transfer.ops.masked_tokens import mask_tokens
from keras_transfer.ops.permutations import max_hamming_permutations
from keras_transfer.ops.task_vectors import disjoint_mean
from keras_transfer.ops.task_vectors import elect_sign
from keras_transfer.ops.task_vectors import linear_merge
from keras_transfer.ops.task_vectors import task_arithmetic
from keras_transfer.ops.task_vectors import ties_merge
from keras_transfer.ops.task_vectors import trim_to_density
from keras_transfer.ops.transferability import h_score
from keras_transfer.ops.transferability import leep
from keras_transfer.ops.transferability import nce
from keras_transfer.ops.visual_prompts import insert_prompts
from keras_transfer.ops.visual_prompts import prompt_init_limit
from keras_transfer.ops.visual_prompts import remove_prompts
from keras_transfer.ops.visual_prompts import replace_prompts
