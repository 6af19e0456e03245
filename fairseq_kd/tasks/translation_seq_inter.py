"""`translation_seq_inter`: fairseq's translation task plus a second, selected target per training
sentence (the teacher's K-best hypothesis closest to the gold, from `fairseq-kd-distill --select-closest`).

    fairseq-train DATA --user-dir fairseq_kd --task translation_seq_inter \\
        --selected-targets OUT/bin/train.selected.en-de.de --criterion seq_inter --kd-alpha 0.5 ...

DATA is the original (gold) data; --selected-targets is the path prefix of the binarized selected
targets, aligned by sample id with the training subset. Batches then carry `selected_target` and the
matching decoder input; other subsets (validation) have only the gold target.
"""
from dataclasses import dataclass, field

from fairseq.data import BaseWrapperDataset, data_utils
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from ..errors import FairseqKDError


@dataclass
class SeqInterConfig(TranslationConfig):
    selected_targets: str = field(default="", metadata={
        "help": "path prefix of the binarized selected targets for the training subset "
                "(e.g. OUT/bin/train.selected.en-de.de from fairseq-kd-distill --select-closest)"})


class SelectedTargetDataset(BaseWrapperDataset):
    """Adds `selected_target` (and its teacher-forcing input) to every batch of a LanguagePairDataset."""

    def __init__(self, dataset, selected, pad, eos):
        super().__init__(dataset)
        self.selected = selected
        self.pad, self.eos = pad, eos

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if not batch:
            return batch
        selected = [self.selected[i] for i in batch["id"].tolist()]
        batch["selected_target"] = data_utils.collate_tokens(selected, self.pad, self.eos, left_pad=False)
        prev = data_utils.collate_tokens(selected, self.pad, self.eos, left_pad=False, move_eos_to_beginning=True)
        batch["selected_net_input"] = dict(batch["net_input"], prev_output_tokens=prev)
        batch["selected_ntokens"] = sum(len(s) for s in selected)
        return batch


@register_task("translation_seq_inter", dataclass=SeqInterConfig)
class TranslationSeqInterTask(TranslationTask):
    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        if split != self.cfg.train_subset or not self.cfg.selected_targets:
            return
        selected = data_utils.load_indexed_dataset(self.cfg.selected_targets, self.tgt_dict)
        if selected is None:
            raise FairseqKDError(f"selected targets not found: {self.cfg.selected_targets}(.bin/.idx)")
        base = self.datasets[split]
        if len(selected) != len(base):
            raise FairseqKDError(f"{self.cfg.selected_targets} has {len(selected)} sentences, subset '{split}' has "
                                 f"{len(base)}: the selected targets are not aligned with this data")
        self.datasets[split] = SelectedTargetDataset(base, selected, self.tgt_dict.pad(), self.tgt_dict.eos())
