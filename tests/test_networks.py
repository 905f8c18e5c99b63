"""The PointNet's winners-only gradient pass is exact: same pooled features, same gradients."""
import torch

from training.common.networks import PointNet, winning_points


def test_gradient_pass_on_the_winning_points_matches_the_full_cloud() -> None:
    torch.manual_seed(0)
    net = PointNet()
    points = torch.randn(4, 300, 6)
    weights = torch.randn(4, net.out_features)  # a loss that weighs every pooled feature

    full = net.mlp(points).max(dim=1).values
    (full * weights).sum().backward()
    full_grads = [parameter.grad.clone() for parameter in net.parameters()]
    net.zero_grad()

    pooled = net(points)
    (pooled * weights).sum().backward()
    assert torch.allclose(pooled, full)
    for parameter, expected in zip(net.parameters(), full_grads):
        assert torch.allclose(parameter.grad, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))  # summation order


def test_winning_points_are_a_few_of_the_cloud_and_hold_every_max() -> None:
    torch.manual_seed(1)
    net = PointNet()
    points = torch.randn(3, 500, 6)
    with torch.no_grad():
        chosen = winning_points(net.mlp, points)
        assert chosen.shape[0] == 3 and chosen.shape[1] < 500 and chosen.shape[2] == 6
        assert torch.equal(net.mlp(chosen).max(dim=1).values, net.mlp(points).max(dim=1).values)


def test_without_gradients_the_whole_cloud_is_pooled() -> None:
    net = PointNet()
    points = torch.randn(2, 50, 6)
    with torch.no_grad():
        assert torch.equal(net(points), net.mlp(points).max(dim=1).values)
