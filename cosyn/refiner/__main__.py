"""`python -m cosyn.refiner CONFIG.json`: train a refiner (resumes from its out folder)."""

import json
import sys

from cosyn.refiner.training import RefinerTrainConfig, train_refiner

if __name__ == "__main__":
    print(train_refiner(RefinerTrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))))
