<%@ page contentType="text/plain; charset=UTF-8" session="false" %><%!
    static final java.util.concurrent.atomic.AtomicLong COUNTER = new java.util.concurrent.atomic.AtomicLong();
%><%
    long n = COUNTER.incrementAndGet();
    java.lang.management.RuntimeMXBean rt = java.lang.management.ManagementFactory.getRuntimeMXBean();
    out.print("counter=" + n + "\n");
    out.print("uptime_ms=" + rt.getUptime() + "\n");
    out.print("start_time_ms=" + rt.getStartTime() + "\n");
%>
