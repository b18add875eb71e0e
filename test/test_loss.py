"""SSEN loss (eqs. 1-4) on cases worked by hand."""
import pytest
import torch

from ssen_ros.config import LossConfig
from ssen_ros.loss import ssen_loss


def _hand_case():
    # 1-D embeddings. Instance 0: {0.0, 0.4}, mean 0.2, both points 0.2 away -> hinge 0.1 each,
    # l_0 = 0.1. Instance 1: {1.0}, l_1 = 0. Background point (-1) at 5.0 is ignored.
    emb = torch.tensor([[0.0], [0.4], [1.0], [5.0]], dtype=torch.float64, requires_grad=True)
    inst = torch.tensor([0, 0, 1, -1])
    return emb, inst


def test_hand_values_p1():
    emb, inst = _hand_case()
    out = ssen_loss(emb, inst)
    # eq. 3, p=1: weights 2/3, 1/3 -> pull = 2/3 * 0.1
    assert out.pull.item() == pytest.approx(2 / 3 * 0.1)
    # eq. 2: |0.2 - 1.0| = 0.8 -> hinge 2*0.5 - 0.8 = 0.2 for both ordered pairs, mean 0.2
    assert out.push.item() == pytest.approx(0.2)
    assert out.total.item() == pytest.approx(2 / 3 * 0.1 + 10 * 0.2)


def test_p0_weighs_instances_equally():
    emb, inst = _hand_case()
    p0 = ssen_loss(emb, inst, config=LossConfig(p=0.0))
    p1 = ssen_loss(emb, inst, config=LossConfig(p=1.0))
    assert p0.pull.item() == pytest.approx(0.5 * 0.1)  # (l_0 + l_1) / 2
    assert p1.pull.item() > p0.pull.item()  # the larger, looser instance weighs more at p=1
    assert p0.push.item() == pytest.approx(p1.push.item())


def test_far_apart_tight_instances_cost_nothing():
    emb = torch.tensor([[0.0, 0.0], [0.05, 0.0], [3.0, 0.0], [3.0, 0.05]])
    out = ssen_loss(emb, torch.tensor([0, 0, 1, 1]))
    assert out.total.item() == 0.0


def test_single_instance_has_no_push():
    emb = torch.tensor([[0.0], [1.0]], requires_grad=True)
    out = ssen_loss(emb, torch.tensor([3, 3]))
    assert out.push.item() == 0.0
    assert out.pull.item() == pytest.approx(0.4)  # both 0.5 from the mean, hinge 0.4
    out.total.backward()
    assert torch.isfinite(emb.grad).all()


def test_no_instances_is_zero_and_differentiable():
    emb = torch.randn(5, 8, requires_grad=True)
    out = ssen_loss(emb, torch.full((5,), -1))
    assert out.total.item() == 0.0
    out.total.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_coincident_means_push_fully_with_finite_gradient():
    emb = torch.tensor([[1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    out = ssen_loss(emb, torch.tensor([0, 1]))
    assert out.push.item() == pytest.approx(1.0, abs=1e-5)
    out.total.backward()
    assert torch.isfinite(emb.grad).all()


def test_batch_is_mean_of_scenes_with_local_ids():
    torch.manual_seed(0)
    e1, e2 = torch.randn(30, 8), torch.randn(20, 8)
    i1, i2 = torch.randint(0, 4, (30,)), torch.randint(0, 3, (20,))
    together = ssen_loss(torch.cat([e1, e2]), torch.cat([i1, i2]),
                         torch.cat([torch.zeros(30, dtype=torch.long), torch.ones(20, dtype=torch.long)]))
    separate = [ssen_loss(e1, i1), ssen_loss(e2, i2)]
    for k in range(3):
        assert together[k].item() == pytest.approx(sum(s[k].item() for s in separate) / 2, rel=1e-5)


def test_gradient_matches_finite_differences():
    torch.manual_seed(1)
    emb = (torch.randn(40, 3, dtype=torch.float64) * 0.6).requires_grad_()
    inst = torch.randint(-1, 5, (40,))
    assert torch.autograd.gradcheck(lambda e: ssen_loss(e, inst).total, (emb,))


def _loop_loss(emb: torch.Tensor, inst: torch.Tensor, config: LossConfig = LossConfig()):
    """Eqs. 2-4 written out instance by instance and pair by pair, as printed."""
    ids = [i for i in inst.unique().tolist() if i >= 0]
    members = [emb[inst == i] for i in ids]
    means = [m.mean(0) for m in members]
    sizes = [float(len(m)) for m in members]
    l_i = [torch.relu((m - mu).norm(dim=1) - config.delta_pull).mean() for m, mu in zip(members, means)]
    pull = sum(s ** config.p * l for s, l in zip(sizes, l_i)) / sum(s ** config.p for s in sizes)
    pairs = [(a, b) for a in range(len(ids)) for b in range(len(ids)) if a != b]
    push = sum(torch.relu(2 * config.delta_push - (means[a] - means[b]).norm()) for a, b in pairs) / len(pairs)
    return pull, push


def test_vectorised_terms_equal_the_equations_written_out():
    """Many instances, some of them close enough to push (means within 2 * delta_push)."""
    torch.manual_seed(2)
    inst = torch.randint(-1, 20, (2000,))
    centres = torch.randn(20, 8, dtype=torch.float64) * 0.6
    emb = centres[inst.clamp_min(0)] + 0.2 * torch.randn(2000, 8, dtype=torch.float64)
    out = ssen_loss(emb, inst)
    pull, push = _loop_loss(emb, inst)
    assert out.push.item() > 0 and out.pull.item() > 0
    assert out.pull.item() == pytest.approx(pull.item(), rel=1e-9)
    assert out.push.item() == pytest.approx(push.item(), rel=1e-9)
    assert out.total.item() == pytest.approx(pull.item() + LossConfig().gamma * push.item(), rel=1e-9)
