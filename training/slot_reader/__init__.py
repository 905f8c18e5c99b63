"""The slot reader of a looking policy (the insertion add-on, `agent.insertion`): its views of a task's slot
(`views`) and its training and ONNX export (`train`)."""
