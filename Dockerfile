# A custom SDK container for remote runners (Dataflow --sdk_container_image, Flink/Spark
# DOCKER environments): Beam's Python 3.11 SDK image at the Beam version the launcher uses,
# with this project and its dependencies preinstalled, so workers start without a
# pip install of TensorFlow.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/balance-corpus:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/balance-corpus:0.1.0
#   python -m pipelines.balance ... --runner=DataflowRunner \
#       --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/balance-corpus:0.1.0 --sdk_location=container
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/balance-corpus
COPY pyproject.toml setup.py README.md ./
COPY pipelines pipelines
COPY transforms transforms
COPY training training
RUN pip install --no-cache-dir . && python -c "import pipelines.balance, transforms.plan, training.sampling"
