"""In-process builders for unit tests: models of a registered architecture and real batches."""
import argparse

import torch

import fairseq_kd  # noqa: F401  (registers kd_lstm, word_kd, ...)

from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY


def build_model(task, arch="kd_lstm_1x32", seed=0, **overrides):
    torch.manual_seed(seed)
    args = argparse.Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task)


def sharpen(model, factor=200.0):
    """Scale the output layer so the model's distributions are far from uniform (KL values well above fp32 noise)."""
    with torch.no_grad():
        model.decoder.output_projection.weight.mul_(factor)
    return model


def batch(task, split="valid", n=6):
    task.load_dataset(split)
    dataset = task.dataset(split)
    return dataset.collater([dataset[i] for i in range(n)])
