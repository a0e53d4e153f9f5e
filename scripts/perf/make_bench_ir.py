"""Q1e helper: a stateless copy of the target IR whose head computes the last row only (for benchmark_app)."""
import numpy as np, openvino as ov, openvino.opset13 as ops
from openvino._offline_transformations import stateful_to_stateless_transformation
from common import core, XML
m = core.read_model(XML)
stateful_to_stateless_transformation(m)
node = m.output("logits").get_node().input_value(0).get_node()
hidden = node.input_value(0)
node.input(0).replace_source_output(ops.slice(hidden, np.array([-1]), np.array([np.iinfo(np.int64).max]),
                                              np.array([1]), np.array([1])).output(0))
m.validate_nodes_and_infer_types()
ov.save_model(m, "ir/stateless_last.xml", compress_to_fp16=False)
print([ (i.any_name, i.get_partial_shape()) for i in m.inputs][:6], len(m.inputs))
