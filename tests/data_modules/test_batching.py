import numpy as np
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from data_modules.batching import BucketBatchSampler, EncodedTexts, SortedBatchSampler, pad_collate


def corpus(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return EncodedTexts.from_sequences([list(range(2, 2 + int(k))) for k in rng.integers(1, 300, n)], np.zeros(n))


def test_pad_collate_pads_after_each_sequence():
    batch = pad_collate([(np.array([5, 6, 7]), 1.0), (np.array([8]), 0.0)])
    assert batch.tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.lengths.tolist() == [3, 1] and batch.labels.tolist() == [1.0, 0.0]


def test_bucket_sampler_yields_every_index_once_per_epoch_with_similar_lengths():
    data = corpus()
    sampler = BucketBatchSampler(RandomSampler(data), 16, False, data.lengths, bucket_batches=8, seed=3)
    orders = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(data)))
        spread = np.mean([np.ptp(data.lengths[b]) for b in batches])
        assert spread < 0.25 * np.ptp(data.lengths)  # random batches would spread over most of the range
        orders.append([b[0] for b in batches])
    assert orders[0] != orders[1]  # a new batch order each epoch


def test_sorted_sampler_is_deterministic_and_complete():
    data = corpus(100)
    batches = list(SortedBatchSampler(SequentialSampler(data), 32, False, data.lengths))
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(100))
    assert list(data.lengths[flat]) == sorted(data.lengths)


def test_encoded_texts_round_trip():
    data = EncodedTexts.from_sequences([[3, 4], [5], [6, 7, 8]], [1, 0, 1])
    assert data[2][0].tolist() == [6, 7, 8] and data[1][1] == 0.0
    assert data.subset(np.array([2, 0])).sequence(1).tolist() == [3, 4]
    assert torch.equal(torch.as_tensor(data.lengths), torch.tensor([2, 1, 3]))
