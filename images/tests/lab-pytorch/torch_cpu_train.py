"""A tiny forward and backward pass on CPU: the loss must fall."""
import torch

torch.manual_seed(0)
x = torch.randn(64, 8)
y = x @ torch.randn(8, 1) + 0.1 * torch.randn(64, 1)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
losses = []
for _ in range(20):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters()), "no gradient"
    opt.step()
    losses.append(loss.item())
assert losses[-1] < losses[0] * 0.8, f"loss did not fall: {losses[0]:.4f} -> {losses[-1]:.4f}"
import torchvision
out = torchvision.models.resnet18(weights=None)(torch.randn(1, 3, 64, 64))
assert out.shape == (1, 1000), out.shape
print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f}; resnet18 forward {tuple(out.shape)}")
