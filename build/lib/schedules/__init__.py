"""精防调度 Follow-up scheduler: 分类干预 planning, task generation, 一历五单, notifications."""
