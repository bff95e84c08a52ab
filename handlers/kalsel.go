package handlers

import "github.com/labstack/echo/v4"

// kalselRoutes serves the kalsel refresh style (issue 5: not built yet).
func (s *server) kalselRoutes(g *echo.Group) {}
