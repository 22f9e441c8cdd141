"""A tiny MLServer text model for the text example: BYTES texts in, a keyword score out.

It stands in for a real text classifier: what outrider watches is its input, the texts,
through the sentence embedder configured in examples/text.yaml.
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

KEYWORDS = frozenset({
    "bug", "code", "coder", "computer", "debug", "developer", "java", "javascript",
    "programmer", "programming", "python", "software", "sql", "unix",
})


class KeywordTopicModel(MLModel):
    """Scores each text by the share of its words that are about programming."""

    async def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        scores = []
        for text in texts:
            words = [w.strip(".,!?'\"").lower() for w in text.split()]
            scores.append(sum(w in KEYWORDS for w in words) / max(len(words), 1))
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                ResponseOutput(
                    name="programming_score", shape=[len(scores), 1], datatype="FP32",
                    data=scores,
                )
            ],
        )
