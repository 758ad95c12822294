"""The tasks (paper §4), NumPy only: importing this package never imports TensorFlow.

``get_task(name)`` finds a task, built in or plugged in (``registry``); ``task_from_metadata``
rebuilds one from the metadata an exported model carries. A task of another package
subclasses ``Task`` and may build on the request validators (``as_bit_matrix``, ``as_int``),
``random_bits`` and ``bits_block`` exported here.
"""

from ntm.contract.tasks.base import (Batch, InvalidRequest, as_bit_matrix, as_int, bit_errors,
                                     bits_block, random_bits)
from ntm.contract.tasks.copy import CopyTask
from ntm.contract.tasks.ngrams import NGramsTask
from ntm.contract.tasks.priority_sort import PrioritySortTask
from ntm.contract.tasks.recall import RecallTask
from ntm.contract.tasks.registry import (ENTRY_POINT_GROUP, get_task, guess_task, task_classes,
                                         task_from_metadata, task_names)
from ntm.contract.tasks.repeat_copy import RepeatCopyTask
from ntm.contract.tasks.task import Difficulty, Encoded, Task

__all__ = ["Batch", "CopyTask", "Difficulty", "ENTRY_POINT_GROUP", "Encoded", "InvalidRequest",
           "NGramsTask", "PrioritySortTask", "RecallTask", "RepeatCopyTask", "Task",
           "as_bit_matrix", "as_int", "bit_errors", "bits_block", "get_task", "guess_task",
           "random_bits", "task_classes", "task_from_metadata", "task_names"]
