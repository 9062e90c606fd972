"""A stand-in for kubelet, for tests and the demo only.

Machines without a container runtime (CI runners, this project's dev boxes) have a real
kube-apiserver but nothing that turns Deployments into running pods. The process runner
watches the Deployments that Streamvane manages and runs each replica's container command as
a local process, then writes the Deployment status back. It is not a kubelet: no images, no
isolation, no scheduling, no pods. Never use it in production.
"""
