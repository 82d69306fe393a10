"""`python -m cosyn.refiner CONFIG.json`: train a refiner (resumes from its out folder)."""

import json
import sys
from pathlib import Path

from cosyn.refiner.training import RefinerTrainConfig, train_refiner

if __name__ == "__main__":
    print(train_refiner(RefinerTrainConfig.from_dict(json.loads(Path(sys.argv[1]).read_text()))))
