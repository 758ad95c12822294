"""Training the NTM (TensorFlow): the run directory and its files, the loop and its schedule,
the steps, checkpoints, distribution, evaluation and progress.

    config       ``TrainConfig`` and the run's config.json
    runs         ``Run``: the one way into a run directory (``Run.create``, ``Run.load``)
    checkpoints  the training state saved and restored
    run_writer   every file a run writes (metrics, TensorBoard, checkpoints, summary)
    steps        the compiled training and prediction steps
    schedule     what the loop switches on and off over a run (polish, noise, restarts)
    trainer      ``Trainer``: the loop
    distribute, optimizers, curriculum, evaluation, progress
"""
