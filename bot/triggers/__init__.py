"""What starts runs by itself (schedules) and the timers behind deadlines."""
