"""The node's map subscription, with QoS that suits whatever publishes the map.

A reliable subscriber gets nothing from a best-effort publisher, and a transient_local one
nothing from a volatile publisher (ROS 2's default), so fixed policies leave the node deaf to
some SLAM packages. ``auto`` (the default of ``reliability`` and ``durability``) does what
``ros2 topic echo`` and rosbag2 do: the node subscribes once the first publisher of the topic
is discovered, with that topic's publishers' policies (reliable only when every publisher is
reliable, transient_local only when every one is, so that each of them matches), and logs the
choice. A latched map published before the node started is then delivered on subscription.
Until then nothing subscribes, so a publisher that waits for a subscriber waits for the right
one. A publisher that no subscription policy suits (explicit policies, or one that appears
later with weaker policies) gets one error line naming the policy and the parameter to change.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSPolicyKind, ReliabilityPolicy
from rclpy.event_handler import QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.subscription import Subscription
from sensor_msgs.msg import PointCloud2

from ssen_ros.ros.convert import qos_profile

AUTO = "auto"
DISCOVERY_POLL_S = 0.1
"""How often the graph is checked for the first publisher while the policies are 'auto'."""

_PARAMETER_OF = {QoSPolicyKind.RELIABILITY: "reliability", QoSPolicyKind.DURABILITY: "durability"}


def _name(policy: Any) -> str:
    return policy.name.lower()


def matching_policies(reliability: str, durability: str, publishers: list) -> tuple[str, str]:
    """The (reliability, durability) that receives from every one of ``publishers``
    (``TopicEndpointInfo``); an explicit policy is kept, 'auto' ones are chosen."""
    offered = [p.qos_profile for p in publishers]
    if reliability == AUTO:
        reliability = ("reliable" if all(q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
                       else "best_effort")
    if durability == AUTO:
        durability = ("transient_local" if all(q.durability == DurabilityPolicy.TRANSIENT_LOCAL
                                               for q in offered) else "volatile")
    return reliability, durability


class MapSubscription:
    """Subscribes ``node`` to ``topic`` (raw messages to ``callback``) with the given policies,
    'auto' ones chosen when the first publisher appears (see the module docstring)."""

    def __init__(self, node: Node, topic: str, callback: Callable[[bytes], None],
                 reliability: str, durability: str, depth: int):
        self.node, self.callback, self.depth = node, callback, depth
        self.topic_name = node.resolve_topic_name(topic)
        self.requested = (reliability, durability)
        self.policies: Optional[tuple[str, str]] = None
        """The policies in use; None while 'auto' waits for a publisher."""
        self.subscription: Optional[Subscription] = None
        self._timer = None
        if AUTO in self.requested:
            self._timer = node.create_timer(DISCOVERY_POLL_S, self._on_discovery_poll)
        else:
            self._subscribe(reliability, durability)

    def describe(self) -> str:
        """The policies for log lines: those in use, or what 'auto' waits for."""
        if self.policies is None:
            return (f"QoS reliability {self.requested[0]}, durability {self.requested[1]}: "
                    f"chosen when the first publisher appears")
        return f"{self.policies[0]}, {self.policies[1]}, depth {self.depth}"

    def _subscribe(self, reliability: str, durability: str) -> None:
        self.policies = (reliability, durability)
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible)
        self.subscription = self.node.create_subscription(
            PointCloud2, self.topic_name, self.callback, qos_profile(reliability, durability, self.depth),
            raw=True, event_callbacks=events)

    def _on_discovery_poll(self) -> None:
        publishers = self.node.get_publishers_info_by_topic(self.topic_name)
        if not publishers:
            return
        self.node.destroy_timer(self._timer)
        self._timer = None
        chosen = matching_policies(*self.requested, publishers)
        self._subscribe(*chosen)
        offered = "; ".join(sorted({f"{_name(p.qos_profile.reliability)}, {_name(p.qos_profile.durability)}"
                                    for p in publishers}))
        self.node.get_logger().info(
            f"subscribed to {self.topic_name} with {chosen[0]}, {chosen[1]}, depth {self.depth}, "
            f"matching its {len(publishers)} publisher(s) (offering {offered}; parameters "
            f"reliability: {self.requested[0]}, durability: {self.requested[1]})")

    def _on_incompatible(self, info: QoSRequestedIncompatibleQoSInfo) -> None:
        kind = QoSPolicyKind(info.last_policy_kind)
        parameter = _PARAMETER_OF.get(kind)
        ours = dict(zip(("reliability", "durability"), self.policies or ("", "")))
        offered = {_name(getattr(p.qos_profile, parameter)) for p in
                   self.node.get_publishers_info_by_topic(self.topic_name)} if parameter else set()
        advice = (f"this subscription is {ours[parameter]}, a publisher offers "
                  f"{' or '.join(sorted(offered - {ours[parameter]})) or 'another'}; set parameter "
                  f"{parameter} to auto or to what the publisher offers"
                  if parameter else "set the publisher's QoS to ROS 2 defaults")
        self.node.get_logger().error(
            f"a publisher on {self.topic_name} offers incompatible QoS ({kind.name.lower()}): no map "
            f"from it is received; {advice}")
