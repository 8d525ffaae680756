"""transformers and timm build small models offline and run them."""
import timm
import torch
import transformers

m = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
with torch.no_grad():
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 3)
cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=32)
out = transformers.BertModel(cfg)(torch.tensor([[1, 2, 3]]))
assert out.last_hidden_state.shape == (1, 3, 16)
print(f"timm {timm.__version__}, transformers {transformers.__version__}")
