"""Julia's utils module: schedules, batch sampling, centroids, and adjust_ for schedule loops.

The ``jl:`` tests port AutoEncoderToolkit.jl's ``test/utils.jl`` (v0.1.2); the others
check values worked out by hand from the reference's formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial import KDTree

import autoencoder_toolkit as aet
from autoencoder_toolkit import juliarng, utils

from .fuzzing import fuzz


def f32(v: float) -> float:
    return float(np.float32(v))


# -- step_scheduler ----------------------------------------------------------------------------

def test_jl_step_scheduler_values():
    epoch_change, learning_rates = [1, 3, 5, 7], [0.1, 0.2, 0.3, 0.4]
    assert utils.step_scheduler(5, epoch_change, learning_rates) == 0.3   # @test ... == 0.3
    assert utils.step_scheduler(8, epoch_change, learning_rates) == 0.4   # @test ... == 0.4
    assert utils.step_scheduler(2, epoch_change, learning_rates) == 0.2   # @test ... == 0.2


def test_jl_step_scheduler_lengths_must_match():
    # @test_throws ErrorException utils.step_scheduler(epoch, [1, 3, 5], [0.1, 0.2])
    with pytest.raises(ValueError, match="learning_rates"):
        utils.step_scheduler(2, [1, 3, 5], [0.1, 0.2])


def test_step_scheduler_sorts_by_epoch_without_touching_the_lists():
    changes, rates = [7, 1, 5, 3], [0.4, 0.1, 0.3, 0.2]
    # epoch 1 -> 0.1, epochs 2-3 -> 0.2, 4-5 -> 0.3, 6-7 -> 0.4, later -> 0.4
    assert [utils.step_scheduler(e, changes, rates) for e in range(1, 10)] == [0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4,
                                                                              0.4, 0.4]
    assert changes == [7, 1, 5, 3] and rates == [0.4, 0.1, 0.3, 0.2]


# -- cycle_anneal ------------------------------------------------------------------------------

def test_jl_cycle_anneal_values():
    kw = dict(frac=0.5, βmax=1.0, βmin=0.0, T="Float32")
    assert utils.cycle_anneal(1, 10, 2, **kw) == 0.0   # @test ... == 0.0f0
    assert utils.cycle_anneal(3, 10, 2, **kw) > 0.0    # @test ... > 0.0f0
    assert utils.cycle_anneal(9, 10, 2, **kw) == 1.0   # @test ... == 1.0f0


def test_jl_cycle_anneal_frac_outside_0_1():
    # @test_throws ArgumentError cycle_anneal(...; frac=1.5, ...)
    with pytest.raises(ValueError, match="frac"):
        utils.cycle_anneal(9, 10, 2, frac=1.5)


def test_cycle_anneal_by_hand():
    # P = 10/2 = 5, τ = ((e−1) mod 5)/5: 0, .2, .4, .6, .8; β = τ/0.5 while τ ≤ 0.5, then 1
    expected = [0.0, f32(0.4), f32(0.8), 1.0, 1.0] * 2
    assert [utils.cycle_anneal(e, 10, 2) for e in range(1, 11)] == expected
    # βmin = 0.5, βmax = 2, frac = 0.25, 12 epochs in 3 cycles: P = 4, τ = 0, .25, .5, .75
    assert [utils.cycle_anneal(e, 12, 3, frac=0.25, βmax=2.0, βmin=0.5, T="Float64") for e in range(1, 5)] == [
        0.5, 2.0, 2.0, 2.0]
    # P = 10/3 is not whole: τ = ((e−1) mod ceil(P))/P = 3/(10/3) = 0.9 at epoch 4
    assert utils.cycle_anneal(4, 10, 3, frac=1.0, T=float) == pytest.approx(0.9)
    assert utils.cycle_anneal(5, 10, 3, frac=1.0, T=float) == 0.0
    # frac = 0: no warm-up
    assert utils.cycle_anneal(1, 10, 2, frac=0.0) == 1.0


@fuzz(max_examples=40)
@given(epoch=st.integers(1, 200), n_epoch=st.integers(1, 100), n_cycles=st.integers(1, 10),
       frac=st.floats(0.05, 1.0))
def test_cycle_anneal_stays_between_the_bounds(epoch, n_epoch, n_cycles, frac):
    β = utils.cycle_anneal(epoch, n_epoch, n_cycles, frac=frac, βmax=2.0, βmin=0.5, T="Float64")
    assert 0.5 <= β <= 2.0
    if (epoch - 1) % math.ceil(n_epoch / n_cycles) == 0:
        assert β == 0.5  # every cycle starts at βmin


# -- adjust_ in a schedule loop ---------------------------------------------------------------

def test_adjust_follows_the_step_schedule_on_a_pair_and_on_one_optimizer():
    model = aet.InfoMaxVAE(aet.JointGaussianLogEncoder(4, 2, [3], ["relu"], "identity")
                           * aet.SimpleGaussianDecoder(4, 2, [3], ["relu"], "identity"),
                           aet.MutualInfoChain(4, 2, [3], ["relu"], "identity"))
    opt = aet.setup(torch.optim.Adam, model, lr=1.0)
    seen = []
    for epoch in range(1, 5):
        opt.adjust_(utils.step_scheduler(epoch, [1, 3], [1e-3, 1e-4]))  # Flux.Optimisers.adjust!(opt, η)
        seen.append([g["lr"] for o in opt for g in o.param_groups])
    assert seen == [[1e-3, 1e-3], [1e-4, 1e-4], [1e-4, 1e-4], [1e-4, 1e-4]]
    aet.adjust_(opt.mi, lr=5e-5, β=(0.5, 0.9))  # Julia's β is torch's betas
    assert opt.mi.param_groups[0]["lr"] == 5e-5 and opt.mi.param_groups[0]["betas"] == (0.5, 0.9)
    assert opt.vae.param_groups[0]["lr"] == 1e-4


def test_adjust_refuses_unknown_keywords_without_changing_anything():
    m = torch.nn.Linear(2, 2)
    pair = aet.outputs.OptimizerPair(torch.optim.Adam(m.parameters(), lr=0.1), torch.optim.SGD(m.parameters(), lr=0.2))
    with pytest.raises(TypeError, match=r"adjust_\(\) has no keyword 'betas' for a SGD; accepted: .*lr"):
        pair.adjust_(0.5, betas=(0.9, 0.99))
    assert [o.param_groups[0]["lr"] for o in pair] == [0.1, 0.2]
    with pytest.raises(TypeError, match="opt: expected a torch optimizer or an OptimizerPair"):
        aet.adjust_(m, 0.1)
    with pytest.raises(ValueError, match="lr: expected a learning rate"):
        aet.adjust_(pair.vae, -1.0)


# -- shuffle_data ------------------------------------------------------------------------------

def test_shuffle_data_permutes_whole_samples():
    x = np.arange(24.0).reshape(6, 2, 2)
    y = utils.shuffle_data(x, rng=np.random.default_rng(0))
    assert y.shape == x.shape and sorted(y[:, 0, 0].tolist()) == x[:, 0, 0].tolist()
    for row in y:  # every sample stays whole
        assert any(np.array_equal(row, r) for r in x)


def test_shuffle_data_with_a_julia_stream_is_julias_shuffle():
    x = torch.arange(10.0)[:, None].repeat(1, 3)
    y = utils.shuffle_data(x, rng=juliarng.Xoshiro(123))
    # Julia 1.11 stdlib/Random/src/misc.jl, docstring of shuffle: shuffle(Xoshiro(123), 1:10)
    assert y[:, 0].long().tolist() == [v - 1 for v in [5, 4, 2, 3, 6, 10, 8, 1, 9, 7]]
    assert isinstance(y, torch.Tensor)


# -- locality_sampler ---------------------------------------------------------------------------

@pytest.fixture
def points():
    return np.random.default_rng(42).random((1000, 100))  # Julia: rand(100, 1000)


def test_jl_locality_sampler_indices(points):
    idx = utils.locality_sampler(points, KDTree(points), 10, 5, 50, index=True, rng=np.random.default_rng(1))
    assert len(idx) == 10 + 10 * 5                       # @test length(indices) == n_primary + n_primary*n_secondary
    assert all(0 <= i < len(points) for i in idx)       # @test all(i -> 1 <= i <= size(data, 2), indices)


def test_jl_locality_sampler_samples(points):
    samples = utils.locality_sampler(points, KDTree(points), 10, 5, 50, rng=np.random.default_rng(1))
    assert samples.shape == (10 + 10 * 5, 100)           # @test size(samples) == (size(data, 1), n_p + n_p*n_s)


def test_jl_locality_sampler_n_secondary_above_k_neighbors(points):
    # @test_throws ErrorException utils.locality_sampler(data, tree, 10, 5 + 50, 50, index=true)
    with pytest.raises(ValueError, match="n_secondary"):
        utils.locality_sampler(points, KDTree(points), 10, 55, 50, index=True)


def test_locality_sampler_draws_secondaries_among_the_nearest():
    # points on a line at 0, 1, 2, ..., 19: the 3 nearest of i are i and its two neighbours
    data = np.arange(20.0)[:, None]
    idx = utils.locality_sampler(data, None, 4, 2, 3, index=True, rng=np.random.default_rng(3))
    primary, secondary = idx[:4], idx[4:].reshape(4, 2)
    assert len(set(primary.tolist())) == 4
    for p, s in zip(primary, secondary):
        nearest = {p, p - 1, p + 1} if 0 < p < 19 else ({0, 1, 2} if p == 0 else {17, 18, 19})
        assert set(s.tolist()) <= nearest and len(set(s.tolist())) == 2
    same = utils.locality_sampler(data, KDTree(data), 4, 2, 3, index=True, rng=np.random.default_rng(3))
    assert np.array_equal(primary, same[:4])


# -- centroids -----------------------------------------------------------------------------------

@pytest.fixture
def two_blobs():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = a + 10.0
    return np.concatenate([a, b]).astype(np.float32)


def test_kmeans_centres_are_the_cluster_means(two_blobs):
    centres, labels = utils.centroids_kmeans(two_blobs, 2, assign=True, rng=0)
    assert centres.dtype == np.float32 and centres.shape == (2, 2)
    got = sorted(map(tuple, centres.tolist()))
    assert got == [(0.5, 0.5), (10.5, 10.5)]
    assert len(set(labels[:4])) == 1 and len(set(labels[4:])) == 1 and labels[0] != labels[4]


def test_kmeans_keeps_the_sample_shape_unless_told_not_to():
    x = torch.from_numpy(np.concatenate([np.zeros((3, 1, 2, 2)), np.ones((3, 1, 2, 2))]).astype(np.float32))
    c = utils.centroids_kmeans(x, 2, rng=1)
    assert isinstance(c, torch.Tensor) and tuple(c.shape) == (2, 1, 2, 2)
    assert sorted(float(v) for v in c[:, 0, 0, 0]) == [0.0, 1.0]
    assert tuple(utils.centroids_kmeans(x, 2, reshape_centroids=False, rng=1).shape) == (2, 4)


def test_kmedoids_picks_the_member_with_the_least_total_distance():
    # 1-D clusters {0, 1, 3} and {10, 11, 12}: total distances 4, 3, 5 -> medoid 1; 3, 2, 3 -> 11
    x = np.array([[0.0], [1.0], [3.0], [10.0], [11.0], [12.0]])
    medoids, labels = utils.centroids_kmedoids(x, 2, assign=True, rng=0)
    assert sorted(medoids[:, 0].tolist()) == [1.0, 11.0]
    assert labels.tolist()[:3] == [labels[0]] * 3 and labels.tolist()[3:] == [labels[3]] * 3
    # another metric: city block on 2-D points, medoid of a plus shape is its centre
    plus = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert utils.centroids_kmedoids(plus, 1, "cityblock", rng=0).tolist() == [[0.0, 0.0]]
    assert utils.centroids_kmedoids(plus, 1, lambda u, v: float(np.abs(u - v).max()), rng=0).tolist() == [[0.0, 0.0]]


def test_centroid_argument_errors(two_blobs):
    with pytest.raises(ValueError, match="n_centroids"):
        utils.centroids_kmeans(two_blobs, 9)
    with pytest.raises(TypeError, match="rng"):
        utils.centroids_kmedoids(two_blobs, 2, rng="seed")
    with pytest.raises(ValueError, match="x: expected samples"):
        utils.centroids_kmeans(np.zeros(3), 1)
