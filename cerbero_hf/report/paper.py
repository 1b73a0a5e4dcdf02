"""The paper's numbers the report sets beside a run's (Cerbero-7B, arXiv 2311.15698; docs/method.md, "Numbers to
compare with"). They are the paper's, for 7B models; a run's scores are shown next to them, never mixed in."""

from __future__ import annotations

# Table 2 (SQuAD-it, 3-shot: F1, EM) and Table 3 (EVALITA, 5-shot, F1: sentiment, irony, toxicity).
TABLE2_3 = (
    # model, squad F1, squad EM, sentiment, irony, toxicity
    ("Mistral-7B f.t.w. Full (cerbero-7b)", 72.55, 55.6, 61.80, 48.51, 63.04),
    ("Mistral-7B f.t.w. Generated", 70.83, 52.5, 59.72, 44.75, 63.74),
    ("Mistral-7B f.t.w. Fauno", 68.35, 48.2, 57.45, 41.84, 63.46),
    ("base Mistral-7B", 15.55, 8.50, 12.14, 34.16, 34.16),
    ("Fauno", 44.46, 0.00, 12.23, 39.17, 33.84),
    ("Camoscio", 37.42, 0.00, 13.33, 39.65, 38.18),
)
# our task -> (column of TABLE2_3 after the model name, the paper's column title)
COLUMNS = {"squad_it": (0, "SQuAD-it F1"), "squad_it_em": (1, "SQuAD-it EM"), "sentipolc": (2, "Sentiment F1"),
           "ironita": (3, "Irony F1"), "ami2020": (4, "Toxicity F1")}
SEEDS = {"trees": 111, "messages": 554, "paths": 358}  # §3.2
NLL_THRESHOLD = 2.0  # §4
SIMILARITY_THRESHOLD = 0.9  # §3.3
TARGET_LENGTHS = (4, 10)  # §3.3: 4 to 10 messages per conversation
REFINE_REMOVED = {"empty": 73, "turn_order": 225, "duplicates": 2368}  # §3.1
# Table 1: the fine-tuning hyper-parameters it states (a full fine-tune of Mistral-7B; D25-D28 fill the rest)
TABLE1 = {"model": "mistralai/Mistral-7B-v0.1", "lora": False, "max_length": 8192, "per_device_train_batch_size": 4,
          "num_train_epochs": 1, "optim": "adamw_bnb_8bit", "learning_rate": 5e-6, "lr_scheduler_type": "cosine",
          "bf16": True, "warmup_steps": 10}
