"""Imports every domain's models so Alembic and the app see the whole schema."""

from deploymate.admin.models import SavedView, UpgradeRequest
from deploymate.apps.models import App, AppRelease, AppSecret, ShipRequest
from deploymate.audit.models import AuditEvent
from deploymate.auth.models import ApiToken, AuthSession, User
from deploymate.core.events import EventRecord
from deploymate.deployments.models import Deployment, DeploymentEvent, DeploymentTemplate, Release
from deploymate.jobs.models import DeployLock, Job, JobEvent
from deploymate.monitoring.models import MonitorChange, MonitorState
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery
from deploymate.registries.models import Registry
from deploymate.servers.models import Server

__all__ = [
    "ApiToken",
    "App",
    "AppRelease",
    "AppSecret",
    "AuditEvent",
    "AuthSession",
    "DeployLock",
    "Deployment",
    "DeploymentEvent",
    "DeploymentTemplate",
    "EventRecord",
    "Job",
    "JobEvent",
    "MonitorChange",
    "MonitorState",
    "Notification",
    "Registry",
    "Release",
    "SavedView",
    "Server",
    "ShipRequest",
    "UpgradeRequest",
    "User",
    "Webhook",
    "WebhookDelivery",
]
