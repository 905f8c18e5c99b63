"""The slot reader of a looking policy (the insertion add-on, `agent.insertion`): its views of a task's slot
(`views`) and its training and ONNX export (`train`). The defaults of `ms2agent train-slot-reader` and
`export-slot-reader`:"""

EPISODES = 4000  # episodes, one look view each (the last quarter held out)
UPDATES = 5000  # Adam updates
BATCH_SIZE = 32  # views per update
LOOK_STEP = 40  # the step at which a looking policy reads the slot (the expert's look phase lasts that long)
