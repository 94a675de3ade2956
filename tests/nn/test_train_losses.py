import math

import pytest
import torch

from mess.nn.train.losses import (
    Teacher,
    cross_entropy,
    distillation,
    positive_filtering_loss,
    positive_mask,
)

IGNORE = 255


def _softmax(values, t):
    exps = [math.exp(v / t) for v in values]
    return [e / sum(exps) for e in exps]


def _reference(student, teacher, labels, temperature, weight):
    """Pixel-by-pixel loops over plain lists: CE on labelled pixels + w*T^2*KL on positives."""
    ce, n_labelled, kl, n_positive = 0.0, 0, 0.0, 0
    for s, t, y in zip(student, teacher, labels, strict=True):
        if y == IGNORE:
            continue
        n_labelled += 1
        ce -= math.log(_softmax(s, 1.0)[y])
        if max(range(len(t)), key=t.__getitem__) != y:  # teacher wrong: no distillation
            continue
        n_positive += 1
        p, q = _softmax(t, temperature), _softmax(s, temperature)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    return ce / n_labelled + weight * temperature**2 * kl / n_positive, n_positive


# 5 pixels, 3 classes: teacher right on pixels 0 and 3, wrong on 1, pixel 2 ignored (teacher
# would be "right" there for label 0 if ignore were not excluded), pixel 4 right.
STUDENT = [[0.2, 1.5, -0.3], [2.0, 0.1, 0.0], [0.5, 0.5, 0.5], [-1.0, 0.3, 0.9], [0.0, 0.0, 2.5]]
TEACHER = [[3.0, 0.5, 0.1], [0.1, 0.2, 2.2], [4.0, 0.0, 0.0], [0.0, 0.4, 1.7], [0.3, 0.2, 1.1]]
LABELS = [0, 1, IGNORE, 2, 2]


def _tensors():
    s = torch.tensor(STUDENT, dtype=torch.float64).T.reshape(1, 3, 1, 5)
    t = torch.tensor(TEACHER, dtype=torch.float64).T.reshape(1, 3, 1, 5)
    y = torch.tensor(LABELS).reshape(1, 1, 5)
    return s, t, y


def test_positive_mask_keeps_labelled_pixels_where_the_teacher_is_right():
    _, t, y = _tensors()
    assert positive_mask(t, y).flatten().tolist() == [True, False, False, True, True]


@pytest.mark.parametrize(("temperature", "weight"), [(1.0, 1.0), (2.0, 0.5), (4.0, 3.0)])
def test_positive_filtering_loss_equals_hand_computed_reference(temperature, weight):
    s, t, y = _tensors()
    expected, n_positive = _reference(STUDENT, TEACHER, LABELS, temperature, weight)
    assert n_positive == 3
    got = positive_filtering_loss(s, t, y, temperature=temperature, weight=weight)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_distillation_is_scaled_by_temperature_squared():
    s, t, y = _tensors()
    mask = positive_mask(t, y)
    kl_only = distillation(s, t, mask, 3.0) / 9.0
    _, n = _reference(STUDENT, TEACHER, LABELS, 3.0, 0.0)
    p = [_softmax(TEACHER[i], 3.0) for i in (0, 3, 4)]
    q = [_softmax(STUDENT[i], 3.0) for i in (0, 3, 4)]
    raw = sum(
        sum(a * math.log(a / b) for a, b in zip(pi, qi, strict=True))
        for pi, qi in zip(p, q, strict=True)
    )
    assert float(kl_only) == pytest.approx(raw / n, rel=1e-6)


def test_distillation_is_zero_when_the_teacher_is_never_right():
    s, t, _ = _tensors()
    wrong = torch.tensor([1, 0, 1, 0, 0]).reshape(1, 1, 5)  # teacher argmax: 0, 2, 0, 2, 2
    loss = positive_filtering_loss(s, t, wrong, temperature=2.0, weight=5.0)
    assert float(loss) == pytest.approx(float(cross_entropy(s, wrong)), rel=1e-12)


def test_no_gradient_flows_into_the_teacher():
    s, t, y = _tensors()
    s.requires_grad_(True)
    t.requires_grad_(True)
    positive_filtering_loss(s, t, y, temperature=2.0, weight=1.0).backward()
    assert t.grad is None and s.grad is not None


def test_a_teacher_computed_once_gives_every_exit_the_same_loss_and_gradient_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 4, 8, 8, generator=g)
    y = torch.randint(0, 4, (2, 8, 8), generator=g)
    y[:, :2] = IGNORE
    teacher = Teacher.positive(t, y, 2.0)
    for _ in range(3):  # several exits share one Teacher, as in a stage-2 step
        s = torch.randn(2, 4, 8, 8, generator=g)
        fresh, shared = s.clone().requires_grad_(), s.clone().requires_grad_()
        a = positive_filtering_loss(fresh, t, y, temperature=2.0, weight=0.7)
        b = positive_filtering_loss(shared, t, y, temperature=2.0, weight=0.7, teacher=teacher)
        a.backward()
        b.backward()
        assert torch.equal(a, b) and torch.equal(fresh.grad, shared.grad)
