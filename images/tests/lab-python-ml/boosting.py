"""xgboost and lightgbm train on a tiny problem and beat chance."""
import lightgbm
import numpy as np
import xgboost

rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4))
y = (X[:, 0] + X[:, 1] > 0).astype(int)
xgb = xgboost.XGBClassifier(n_estimators=10, max_depth=2).fit(X, y)
lgb = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
for name, m in (("xgboost", xgb), ("lightgbm", lgb)):
    acc = (m.predict(X) == y).mean()
    assert acc > 0.9, f"{name} accuracy {acc}"
print(f"xgboost {xgboost.__version__}, lightgbm {lightgbm.__version__}: both > 0.9 accuracy")
